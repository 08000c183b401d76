"""The native relay node: serves the web app and (issue "Real transports") routes swarm frames."""
