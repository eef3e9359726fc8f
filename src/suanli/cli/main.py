"""The ``suanli`` command: every subcommand, with --help on each.

Commands that talk to a server read $SUANLI_SERVER (default http://127.0.0.1:8270) and
$SUANLI_TOKEN.
"""

from __future__ import annotations

import typer

from suanli.cli.audit import audit
from suanli.cli.billing import billing_app, ledger_app
from suanli.cli.chips import chips
from suanli.cli.compliance import artifacts_app, compliance_app, datasets_app, workloads_app
from suanli.cli.fleet import fleet_app
from suanli.cli.inventory import dc_app, nodes_app
from suanli.cli.qualify import qualifications_app, qualify
from suanli.cli.server import agent_cmd, gateway_cmd, migrate_cmd, up
from suanli.cli.serving import deploy, deployments_app, models_app, usage
from suanli.cli.sim import sim_app
from suanli.cli.tenants import keys_app, tenants_app, tokens_app

app = typer.Typer(
    help="suanli: one cloud over a mixed fleet of AI accelerators.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(up)
app.command("agent")(agent_cmd)
app.command("migrate")(migrate_cmd)
app.command("gateway")(gateway_cmd)
app.command()(deploy)
app.command()(usage)
app.add_typer(deployments_app, name="deployments")
app.add_typer(models_app, name="models")
app.add_typer(billing_app, name="billing")
app.add_typer(ledger_app, name="ledger")
app.command()(chips)
app.command()(audit)
app.command()(qualify)
app.add_typer(dc_app, name="dc")
app.add_typer(nodes_app, name="nodes")
app.add_typer(fleet_app, name="fleet")
app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="keys")
app.add_typer(tokens_app, name="tokens")
app.add_typer(compliance_app, name="compliance")
app.add_typer(datasets_app, name="datasets")
app.add_typer(workloads_app, name="workloads")
app.add_typer(artifacts_app, name="artifacts")
app.add_typer(qualifications_app, name="qualifications")
app.add_typer(sim_app, name="sim")

if __name__ == "__main__":
    app()
