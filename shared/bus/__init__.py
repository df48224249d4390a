"""The message bus port and its adapters (in-process; RabbitMQ for the distributed mode)."""

from shared.bus.port import Bus, Handler, Message

__all__ = ["Bus", "Handler", "Message"]
