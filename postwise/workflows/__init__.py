"""Automation workflows: definition (parse_workflow), the pure engine (advance) and the
shipped playbooks. See docs/workflows.md."""
