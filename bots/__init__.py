"""Front ends that talk to people (the Slack approval bot)."""
