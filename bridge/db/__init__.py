"""The booking database: models, engines, migrations and units of work."""
