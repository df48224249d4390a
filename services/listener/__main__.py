"""`python -m services.listener`: the XSole listener as its own process."""

from services.cli import main

if __name__ == "__main__":
    main(["listener"])
