"""Helpers shared by labctl, the fake host tools and the lab Nova driver.

Everything here uses the standard library only: it runs under the system
python3 (labctl, virsh, systemctl) and inside the lab's Nova venv (driver).
"""
