#   Licensed under the Apache License, Version 2.0 (the "License"); you may
#   not use this file except in compliance with the License. You may obtain
#   a copy of the License at
#
#        http://www.apache.org/licenses/LICENSE-2.0
#
#   Unless required by applicable law or agreed to in writing, software
#   distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#   WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#   License for the specific language governing permissions and limitations
#   under the License.

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
