"""Live updates for dashboards over Socket.IO (served on the HTTP port at /socket.io)."""

from services.wss.server import LiveUpdates, create_socketio, subscribe_live_updates

__all__ = ["LiveUpdates", "create_socketio", "subscribe_live_updates"]
