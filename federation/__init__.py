"""Federation over RabbitMQ between hubs that share a broker network: a route's messages go to
a local out-queue (the `federation` destination), a RabbitMQ shovel carries them to the upper
(or lower) hub's in-queue, and that hub accepts them into its own exchange log as the sending
hub's system (the `inbound` service). `huitong federation plan` writes the shovels.

The other way, across network boundaries, is the `hub` destination (SOAP with WS-Security to
the other hub's /ws/exchange); both keep the message id and the original source, so a
message's lineage is followed from hub to hub by its id."""
