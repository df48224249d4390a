"""Location visibility (CONTRACT §8): the policy (policy.py) and the one gate every reader of
positions goes through (gate.py, the ServiceContext's `positions`)."""
