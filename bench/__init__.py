"""`saga bench`: measure the shop's order sagas on the real servers, beside a hand-written baseline."""
