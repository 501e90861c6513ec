"""A fake Notion API (version 2025-09-03) over real HTTP, serving the sample company's workspace."""

from connectors.sandbox.notion.server import DEFAULT_TOKEN, NotionSandbox, ThreadServer, running_sandbox
from connectors.sandbox.notion.workspace import TEAMSPACES, build_workspace

__all__ = ["DEFAULT_TOKEN", "NotionSandbox", "TEAMSPACES", "ThreadServer", "build_workspace", "running_sandbox"]
