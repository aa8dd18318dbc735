"""imagegen-queue's worker side, one package per layer; each imports only those listed before
it (checked by ``make lint``): ``core`` -> ``db`` -> ``telemetry`` -> ``store`` ->
``provider`` | ``blobs`` -> ``service`` -> ``engine`` -> ``broker`` -> ``cli`` | ``producer``."""
