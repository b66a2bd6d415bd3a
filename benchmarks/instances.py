"""Instance storage for a measurement: a fresh DAGSTER_HOME each time, holding the project's
own instance file (dagster_home/dagster.yaml) with, for PostgreSQL, the storage section of the
shipped production file (deploy/dagster.yaml) pointed at a dedicated, freshly created database.
"""

from __future__ import annotations

from pathlib import Path

import psycopg2
import yaml

ROOT = Path(__file__).resolve().parent.parent
LOCAL_INSTANCE = ROOT / "dagster_home" / "dagster.yaml"
DEPLOY_INSTANCE = ROOT / "deploy" / "dagster.yaml"
STORAGES = ("sqlite", "postgres")


class Postgres:
    """The server of the PostgreSQL measurements (trust auth locally) and its bench database."""

    def __init__(self, host: str, port: int, user: str, database: str) -> None:
        self.host, self.port, self.user, self.database = host, port, user, database

    def _admin(self) -> psycopg2.extensions.connection:
        conn = psycopg2.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", connect_timeout=5
        )
        conn.autocommit = True
        return conn

    def recreate(self) -> str:
        """Drop and create the bench database (never the shared `test` one); its version."""
        if self.database in {"postgres", "test", "template0", "template1"}:
            raise ValueError(f"refusing to wipe database {self.database!r}")
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f'drop database if exists "{self.database}" with (force)')
                cur.execute(f'create database "{self.database}"')
                cur.execute("show server_version")
                row = cur.fetchone()
        finally:
            conn.close()
        return str(row[0]) if row else "?"

    def env(self) -> dict[str, str]:
        """DAGSTER_PG_* as the deployment supplies them (the password is unused under trust)."""
        return {
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": "unused-under-trust-auth",
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_DB": self.database,
            "DAGSTER_PG_PORT": str(self.port),
        }


def write_home(home: Path, storage: str) -> None:
    """dagster.yaml for ``storage`` in the (new, empty) folder ``home``."""
    if storage not in STORAGES:
        raise ValueError(f"unknown storage {storage!r}; known: {', '.join(STORAGES)}")
    config = yaml.safe_load(LOCAL_INSTANCE.read_text())
    if storage == "postgres":
        config["storage"] = yaml.safe_load(DEPLOY_INSTANCE.read_text())["storage"]
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
