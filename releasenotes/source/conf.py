"""Sphinx configuration of the osc-cpumigrate release notes (reno)."""

project = 'osc-cpumigrate Release Notes'
copyright = 'osc-cpumigrate developers'
extensions = ['reno.sphinxext']
master_doc = 'index'
exclude_patterns = ['_build']
html_theme = 'alabaster'
html_static_path: list[str] = []
