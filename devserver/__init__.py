"""The local stack: ``python -m devserver`` (`make dev`) serves template.yaml's HTTP API on
127.0.0.1 with an embedded moto endpoint; ``python -m devserver.ctl`` (`make ctl`) runs the
operator CLI against it. Not part of the layer: nothing here ships to Lambda."""
