"""A hub process for crash tests: relay running, accepting COUNT fresh messages one by one
and printing `ACCEPTED <message id>` after each receipt. The test kill -9s it mid-stream."""
import sys

from bus.config import load_settings
from bus.hub import Hub
from bus.logs import configure_logging
from tests.helpers.messages import case_results

if __name__ == "__main__":
    configure_logging("WARNING", "json")
    hub = Hub(load_settings()).start()
    for message_id, data in case_results(int(sys.argv[1])):
        receipt = hub.accept(data, system="320382.scjgj.djxt")
        print(receipt.status, message_id, flush=True)
    hub.stop()
