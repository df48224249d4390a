"""Which listener holds a device: the cache mark the listener keeps and other services read."""


def online_key(device_id: int) -> str:
    """Cache key present while a listener holds the device's connection; its value
    names that listener (host:pid), the registry of which process holds which device."""
    return f"device:{device_id}:online"
