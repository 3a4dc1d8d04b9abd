"""mimetic: streaming analytics for facial sEMG and telemetry from facial-therapy wearables."""

__version__ = "0.1.0"
