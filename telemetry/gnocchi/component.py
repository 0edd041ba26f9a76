"""Opening the Gnocchi catalogue beside the sample store, and closing it with the daemon."""

from __future__ import annotations

import asyncio
from typing import Any

from telemetry.component import Component
from telemetry.gnocchi.catalog import Catalog
from telemetry.gnocchi.service import GnocchiService, catalog_url
from telemetry.meter.store.base import SampleStore
from telemetry.runtime import Runtime


def open_gnocchi(rt: Runtime, store: SampleStore) -> GnocchiService:
    return GnocchiService(Catalog(catalog_url(store)), store, rt.bus, rt.settings.bus.format)


class GnocchiCatalogComponent(Component):
    """Holds the catalogue's database connection; stops after the API that writes to it."""

    name = "gnocchi.catalog"

    def __init__(self, catalog: Catalog) -> None:
        super().__init__()
        self.catalog = catalog

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await asyncio.to_thread(self.catalog.close)

    def details(self) -> dict[str, Any]:
        return {"database": self.catalog.db.url.split("@")[-1], "resources": len(self.catalog.resources),
                "metrics": len(self.catalog.metrics)}
