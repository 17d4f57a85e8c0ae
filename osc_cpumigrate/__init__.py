"""osc-cpumigrate: live-migrate servers between hypervisors of different
CPU vendors."""
