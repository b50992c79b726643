"""Past one machine: partitions of residents, leases with fencing epochs, and the JetStream roles
(bridge and worker) that run BedWatch as several processes (docs/design.md, "Scale")."""
