"""The ``pghd`` command line: one entry point, one sub-command module per concern."""

from __future__ import annotations

import typer

from pghd.commands import (
    alerts,
    audit,
    care_plan,
    dev,
    evaluate,
    grafana,
    import_,
    influx,
    kafka,
    patients,
    replay,
    run,
    simulate,
    summary,
    topics,
)

app = typer.Typer(
    name="pghd",
    help="Patient-generated health data platform: local stack, topics, simulator.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(dev.app, name="dev")
app.add_typer(topics.app, name="topics")
app.add_typer(kafka.app, name="kafka")
app.add_typer(grafana.app, name="grafana")
app.add_typer(alerts.app, name="alerts")
app.add_typer(care_plan.app, name="care-plan")
app.add_typer(influx.app, name="influx")
app.add_typer(import_.app, name="import")
app.add_typer(patients.app, name="patients")
app.command(name="audit")(audit.audit)
app.command(name="simulate")(simulate.simulate)
app.command(name="summary")(summary.summary)
app.command(name="run")(run.run)
app.command(name="replay")(replay.replay)
app.command(name="evaluate")(evaluate.evaluate)


def main() -> None:
    """Entry point of the ``pghd`` console script."""
    app()


if __name__ == "__main__":
    main()
