"""The environment variables paxoskv's clients read (no imports: the CLI loads this first)."""

#: Client addresses of some nodes, comma-separated (the command line and the examples).
ENV_CLUSTER = "PAXOSKV_CLUSTER"
#: TLS files of a client that gets no `tls=` (router.tls).
ENV_CA = "PAXOSKV_TLS_CA"
ENV_CERT = "PAXOSKV_TLS_CERT"
ENV_KEY = "PAXOSKV_TLS_KEY"
