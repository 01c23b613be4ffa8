"""ThriftMux: Finagle's Mux session protocol carrying thrift calls — what a Linkerd 1
router's ``io.l5d.namerd`` interpreter speaks to namerd's
``io.l5d.thriftNameInterpreter`` interface.

``message`` frames and parses Mux; ``server`` serves a thrift service over Mux and over
plain framed thrift on the same port (told apart by the first frame, as Finagle's
ThriftMux servers do); ``client`` is a multiplexing Mux client with Finagle's
handshake, pings, discards and drains; ``thrift`` dispatches thrift calls to a
thriftpy2 service and encodes calls and replies.
"""
