package payload

import (
	"cmp"
	"slices"
	"sync/atomic"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// CompiledIn is the [TypeInfo.Origin] of a type compiled into the bridge.
const CompiledIn = "compiled in"

// generations numbers the loads of every registry, so a generation says
// which load a list of types came from.
var generations atomic.Uint64

// TypeInfo is one message type a registry resolves, and where it comes from.
type TypeInfo struct {
	// Desc describes the message.
	Desc protoreflect.MessageDescriptor
	// Origin is [CompiledIn], or the path of the descriptor set that
	// defined the type's file (for [NewRegistryFromSet], the origin given).
	Origin string
}

// Name is the type's full name.
func (t TypeInfo) Name() protoreflect.FullName { return t.Desc.FullName() }

// Generation identifies the types in force: it changes on every successful
// [Registry.Reload], and stays the same until the next one. Compiled-in
// types never change.
func (r *Registry) Generation() uint64 { return r.cur.Load().gen }

// Types returns every message type the registry resolves, the compiled-in
// ones and those of the descriptor sets, sorted by full name, and the
// generation they belong to: the list and the generation come from one
// load, whatever reload happens meanwhile. Map entries are not types.
func (r *Registry) Types() (types []TypeInfo, generation uint64) {
	set := r.cur.Load()
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		types = append(types, TypeInfo{Desc: mt.Descriptor(), Origin: CompiledIn})
		return true
	})
	set.types.RangeMessages(func(mt protoreflect.MessageType) bool {
		md := mt.Descriptor()
		types = append(types, TypeInfo{Desc: md, Origin: set.origin[md.ParentFile().Path()]})
		return true
	})
	slices.SortFunc(types, func(a, b TypeInfo) int { return cmp.Compare(a.Name(), b.Name()) })
	return types, set.gen
}
