"""The web console for staff (/console/): server-rendered pages over the same storage and handlers
as the chat commands."""
