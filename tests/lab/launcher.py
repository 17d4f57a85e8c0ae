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

"""Start a Nova service of the lab (runs with the lab venv's python).

    launcher.py compute|conductor|scheduler [nova options...]

For nova-compute it first honours the lab's "next start fails" fault and
appends the lab's driver directory to ``nova.virt.__path__`` so that
``compute_driver = labdriver.LabDriver`` can be loaded.
"""
import os
import sys

LAB_DIR = os.path.dirname(os.path.abspath(__file__))


def main():
    service, args = sys.argv[1], sys.argv[2:]
    if service == 'compute':
        flag = os.path.join(os.environ['LAB_STATE_DIR'], 'faults',
                            os.environ['LAB_HOST'], 'next-start-fails')
        if os.path.exists(flag):
            os.unlink(flag)   # one shot
            sys.stderr.write('CRITICAL nova [-] Unhandled error: lab fault: '
                             'this start of nova-compute fails\n')
            sys.exit(1)
        import nova.virt
        nova.virt.__path__.append(os.path.join(LAB_DIR, 'nova_virt'))
        from nova.cmd import compute as cmd
    elif service == 'conductor':
        from nova.cmd import conductor as cmd
    elif service == 'scheduler':
        from nova.cmd import scheduler as cmd
    else:
        sys.exit('unknown service %s' % service)
    sys.argv = ['nova-%s' % service] + args
    sys.exit(cmd.main())


if __name__ == '__main__':
    main()
