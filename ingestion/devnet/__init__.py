"""The local devnet: an anvil process (``node``), traffic for it (``traffic``) and the compiled
contracts that traffic deploys (``contracts``).

Only the light ``node`` names are re-exported here: importing this package must not pull in the
traffic generator's dependencies (eth-account, ckzg). Import ``ingestion.devnet.traffic`` for
traffic. The devnet's address and chain id are declared in ``ingestion.settings``.
"""

from ingestion.devnet.node import (
    DEFAULT_HARDFORK,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEVNET_CHAIN_ID,
    Devnet,
    DevnetError,
    check_port_free,
    find_anvil,
    free_port,
    rpc_call,
)

__all__ = [
    "DEFAULT_HARDFORK",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEVNET_CHAIN_ID",
    "Devnet",
    "DevnetError",
    "check_port_free",
    "find_anvil",
    "free_port",
    "rpc_call",
]
