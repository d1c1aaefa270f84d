"""A strict stand-in for the Hugging Face Hub, written from the Hub's published API docs and the
stock client's source (shared/reference/hf-hub-http-contract.md), served on a real socket by its
own process: the target of the publication mirror's tests. `python -m tests.hubstandin --port N
--config FILE --workdir DIR`."""
