// namerd's thrift name interpreter API (Linkerd 1.7's io.l5d.thriftNameInterpreter /
// io.l5d.namerd). Written for namerouter from the wire format: struct, field and method
// names, ids and types are those facts; the comments are ours.
//
// Every call but `delegate` is a long poll: the client sends the stamp of the value it
// has (empty at first) and the server answers when it has a value with another stamp.

namespace java io.buoyant.namerd.iface.thriftjava

typedef list<binary> Path      // path labels, raw bytes
typedef string Ns              // namespace name
typedef binary Stamp           // opaque version of a value, chosen by the server
typedef string Dtab            // dtab in text form
typedef i32 BoundNodeId
typedef i32 DelegateNodeId

struct Void {}

struct NameRef {
  1: Stamp stamp
  2: Path name
  3: Ns ns
}

// -- binding: a logical name to a bound tree ------------------------------------------

struct BindReq {
  1: Dtab dtab         // appended to the namespace's dtab
  2: NameRef name
  3: Path clientId
}

struct BoundName {
  1: Path id
  2: Path residual
}

struct WeightedNodeId {
  1: double weight
  2: BoundNodeId id
}

// A tree node; alt and union children are ids into BoundTree.nodes.
union BoundNode {
  1: Void neg
  2: Void empty
  3: Void fail
  4: BoundName leaf
  5: list<BoundNodeId> alt
  6: list<WeightedNodeId> weighted
}

struct BoundTree {
  1: BoundNode root
  2: map<BoundNodeId, BoundNode> nodes
}

struct Bound {
  1: Stamp stamp
  2: BoundTree tree
  3: Ns ns
}

exception BindFailure {
  1: string reason
  2: i32 retryInSeconds  // unused
  3: NameRef name
  4: Ns ns
}

// -- addresses of a bound id ----------------------------------------------------------

struct AddrReq {
  1: NameRef name
  2: Path clientId
}

struct AddrMeta {
  1: optional string authority             // Host / :authority to send
  2: optional string nodeName              // node the endpoint runs on
  3: optional double endpoint_addr_weight  // load-balancer weight of an endpoint
}

struct TransportAddress {
  1: binary ip    // 4 or 16 bytes
  2: i32 port
  3: optional AddrMeta meta
}

struct BoundAddr {
  1: set<TransportAddress> addresses
  2: optional AddrMeta meta
}

union AddrVal {
  1: BoundAddr bound
  2: Void neg
}

struct Addr {
  1: Stamp stamp
  2: AddrVal value
}

exception AddrFailure {
  1: string reason
  2: i32 retryInSeconds  // unused
  3: NameRef name
}

// -- delegation (one answer, not a long poll) -----------------------------------------

struct Transformation {
  1: BoundName value
  2: DelegateNodeId tree
}

union DelegateContents {
  1: string error
  2: Void empty
  3: Void fail
  4: Void neg
  5: DelegateNodeId delegate
  6: BoundName boundLeaf
  7: Path pathLeaf
  8: list<DelegateNodeId> alt
  9: list<WeightedNodeId> weighted
  10: Transformation transformation
}

struct DelegateNode {
  1: Path path
  2: string dentry   // the dentry that produced this node, in text form
  3: DelegateContents contents
}

struct DelegateTree {
  1: DelegateNode root
  2: map<DelegateNodeId, DelegateNode> nodes
}

struct Delegation {
  1: Stamp stamp     // clients send it empty
  2: DelegateTree tree
  3: Ns ns
}

struct DelegateReq {
  1: Dtab dtab
  2: Delegation delegation
  3: Path clientId
}

exception DelegationFailure {
  1: string reason
}

// -- a namespace's dtab -----------------------------------------------------------------

struct DtabReq {
  1: Stamp stamp
  2: Ns ns
  3: Path clientId
}

struct DtabRef {
  1: Stamp stamp
  2: Dtab dtab
}

exception DtabFailure {
  1: string reason
}

service Namer {
  Bound bind(1: BindReq req) throws (1: BindFailure rf)
  Addr addr(1: AddrReq req) throws (1: AddrFailure af)
  Delegation delegate(1: DelegateReq req) throws (1: DelegationFailure df)
  DtabRef dtab(1: DtabReq req) throws (1: DtabFailure df)
}
