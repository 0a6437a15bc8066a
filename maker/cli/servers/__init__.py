"""`maker mcp` and `maker sim-server`: the commands that serve (agents over MCP; a simulated model over HTTP)."""
