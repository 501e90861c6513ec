"""Local fake vendor servers (Notion, Microsoft Graph) serving the sample company, for tests and the demo."""
