"""Where agents meet maker: the MCP server (`maker mcp`) and the background runs it starts."""
