"""How data enters the system: wire format, gateway, simulator, recording replay."""
