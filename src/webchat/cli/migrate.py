"""``webchat migrate``: bring a store's schema up to date, and say which version it is at.

``webchat serve`` migrates on start too (under a lock, so N processes starting at once do it
once); running this first lets a deployment apply a new schema before the new processes start
and fail loudly there rather than at a server's start."""

from __future__ import annotations

import click

from webchat.store import from_url


@click.command("migrate")
@click.option("--store", "store_url", envvar="WEBCHAT_STORE", metavar="URL",
              help="postgresql://user@host:port/db, or sqlite:///path; default: SQLite in "
                   "--data-dir.  [env: WEBCHAT_STORE]")
@click.option("--data-dir", default="./data", show_default=True, envvar="WEBCHAT_DATA_DIR",
              help="Where the default SQLite database lives.  [env: WEBCHAT_DATA_DIR]")
def migrate_command(store_url: str | None, data_dir: str) -> None:
    """Apply the store's pending migrations and print its schema version."""
    from webchat.cli.main import run

    try:
        store = from_url(store_url, data_dir)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--store") from None

    async def migrate() -> int:
        await store.open()  # opening a store migrates it
        try:
            return store.schema_version
        finally:
            await store.close()

    try:
        version = run(migrate())
    except Exception as exc:  # unreachable, refused, a failing migration: say so, no trace
        raise click.ClickException(f"could not migrate the {store.dialect} store: {exc}"
                                   ) from exc
    click.echo(f"{store.dialect} schema version {version}")
