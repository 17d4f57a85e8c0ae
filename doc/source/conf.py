"""Sphinx configuration of the osc-cpumigrate documentation.

Plain Sphinx (no openstackdocstheme: it wants the project on
opendev.org); the commands are rendered from their argparse parsers by
cliff's ``autoprogram-cliff`` and the release notes by reno's
``release-notes``, so both stay what the code says.  ``sphinx-build -W``
must pass (tools/run-tests and ``tox -e docs``).
"""

project = 'osc-cpumigrate'
copyright = 'osc-cpumigrate developers'
author = 'osc-cpumigrate developers'

extensions = [
    'cliff.sphinxext',
    'reno.sphinxext',
]

# `openstack cpumigrate ...`: the commands are in the plugin's own entry
# point group, named "cpumigrate <verb>"
autoprogram_cliff_application = 'openstack'
autoprogram_cliff_app_dist_name = 'python-openstackclient'

master_doc = 'index'
exclude_patterns = ['_build']
pygments_style = 'sphinx'
html_theme = 'alabaster'
html_title = 'osc-cpumigrate'
html_static_path: list[str] = []

# the formatter options every OSC Lister has are documented by OSC itself
autoprogram_cliff_ignored = [
    '--help', '--format', '--column', '--max-width', '--fit-width',
    '--print-empty', '--noindent', '--quote', '--sort-column',
    '--sort-ascending', '--sort-descending',
]
