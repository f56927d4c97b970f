"""The Slack approval bot (see docs/slack.md)."""
