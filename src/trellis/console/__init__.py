"""The console (`trellis console`): Kiali's API shape over the mesh, token login, roles, web UI."""
