"""Real servers (Redis now; RabbitMQ and Mosquitto later) started privately for a test session."""
