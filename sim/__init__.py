"""The simulation: a synthetic market, miner behaviours, and the wiring that runs them.

Used by the attack simulator (``scripts/simulate.py``), the local subnet
(``scripts/localnet.py``, ``--scraper synthetic``, ``--behaviour``) and the
tests. Production code never imports it: the property-source registry names
``sim.source:SyntheticSource`` and ``sim.answers:BehaviourAnswers`` as plugins,
loaded only when ``--scraper synthetic`` or a ``--behaviour`` asks for them
(``.importlinter`` forbids a static import; ``tests/unit/test_layers.py``
checks that a production miner and validator never load this package).
"""
