"""What the users look at: Grafana dashboards and alert rules as code, reports, researcher exports."""
