"""Where data lives: tables, engines, the workspace-scoped session, migrations."""
