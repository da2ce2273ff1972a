"""Entry point of the ``postwise`` command."""

from __future__ import annotations

import typer

from postwise.cli import (
    bounces,
    campaigns,
    contacts,
    database,
    demo,
    imports,
    messages,
    outbox,
    privacy,
    reports,
    runtime,
    segments,
    worker,
    workflows,
    workspaces,
)

app = typer.Typer(
    help="Postwise: self-hosted B2B email platform.", no_args_is_help=True, add_completion=False
)
app.add_typer(database.app, name="db")
app.add_typer(workspaces.workspace_app, name="workspace")
app.add_typer(workspaces.apikey_app, name="apikey")
privacy.register_contact_commands(contacts.contact_app)
app.add_typer(contacts.contact_app, name="contact")
app.add_typer(contacts.attribute_app, name="attribute")
app.add_typer(demo.demo_app, name="demo")
app.add_typer(privacy.suppress_app, name="suppress")
app.add_typer(imports.import_app, name="import")
app.add_typer(imports.export_app, name="export")
app.add_typer(messages.dkim_app, name="dkim")
app.add_typer(messages.template_app, name="template")
app.add_typer(outbox.outbox_app, name="outbox")
app.add_typer(segments.segment_app, name="segment")
app.add_typer(bounces.bounces_app, name="bounces")
app.add_typer(workflows.workflow_app, name="workflow")
app.add_typer(campaigns.campaign_app, name="campaign")
app.add_typer(reports.report_app, name="report")
app.command()(outbox.send)
app.command()(runtime.serve)
app.command()(runtime.run)
app.command()(bounces.inbound)
worker.register(app)

if __name__ == "__main__":
    app()
