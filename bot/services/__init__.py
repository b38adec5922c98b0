"""Services below the cogs: quotas, guild configuration, API keys and the send-data schema."""
