package payload

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Registry resolves event types: those compiled into the bridge and those
// loaded from descriptor sets (FileDescriptorSet files, as `buf build -o` and
// `protoc --include_imports --descriptor_set_out` write them). It serves the
// Encoder (Any payloads to JSON) and gRPC server reflection, so grpcurl can
// build events of the loaded types with no proto files of its own.
//
// Compiled-in types win: a loaded file whose path is compiled in is skipped,
// and a loaded type whose name is compiled in from another file is an error.
//
// A Registry is safe for concurrent use; [Registry.Reload] swaps the
// loaded types atomically, so lookups never see half a reload.
type Registry struct {
	paths []string
	cur   atomic.Pointer[typeSet]
}

// typeSet is one load of the descriptor sets.
type typeSet struct {
	files  *protoregistry.Files // the loaded files, without compiled-in ones
	types  *protoregistry.Types // dynamic types of the loaded files
	origin map[string]string    // file path -> the set it came from
	gen    uint64               // unique to this load (catalog.go)
}

// NewRegistry loads the descriptor sets at paths. It fails, naming the
// file and the type, when a set cannot be read or parsed, when two sets
// define a file or a type differently, when a type clashes with a
// compiled-in one, or when an import is in no set.
func NewRegistry(paths []string) (*Registry, error) {
	r := &Registry{paths: paths}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// NewRegistryFromSet returns a registry of the types of set, a descriptor
// set held in memory (such as one fetched through server reflection); origin
// names it in errors. Its Reload does nothing.
func NewRegistryFromSet(origin string, set *descriptorpb.FileDescriptorSet) (*Registry, error) {
	l := newSetLoader()
	if err := l.add(origin, set); err != nil {
		return nil, err
	}
	ts, err := l.finish()
	if err != nil {
		return nil, err
	}
	r := &Registry{}
	r.cur.Store(ts)
	return r, nil
}

// Reload reads the descriptor sets again. On error the types loaded before
// stay in force.
func (r *Registry) Reload() error {
	set, err := loadTypeSet(r.paths)
	if err != nil {
		return err
	}
	r.cur.Store(set)
	return nil
}

// Count returns how many message types the descriptor sets provide.
func (r *Registry) Count() int { return r.cur.Load().types.NumMessages() }

// Names returns the full names of the message types the descriptor sets
// provide (not the compiled-in ones), sorted.
func (r *Registry) Names() []protoreflect.FullName {
	var names []protoreflect.FullName
	r.cur.Load().types.RangeMessages(func(mt protoreflect.MessageType) bool {
		names = append(names, mt.Descriptor().FullName())
		return true
	})
	slices.Sort(names)
	return names
}

// FindMessageByName implements [protoregistry.MessageTypeResolver].
func (r *Registry) FindMessageByName(name protoreflect.FullName) (protoreflect.MessageType, error) {
	if mt, err := protoregistry.GlobalTypes.FindMessageByName(name); err == nil {
		return mt, nil
	}
	return r.cur.Load().types.FindMessageByName(name)
}

// FindMessageByURL implements [protoregistry.MessageTypeResolver].
func (r *Registry) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	if mt, err := protoregistry.GlobalTypes.FindMessageByURL(url); err == nil {
		return mt, nil
	}
	return r.cur.Load().types.FindMessageByURL(url)
}

// FindExtensionByName implements [protoregistry.ExtensionTypeResolver].
func (r *Registry) FindExtensionByName(field protoreflect.FullName) (protoreflect.ExtensionType, error) {
	if xt, err := protoregistry.GlobalTypes.FindExtensionByName(field); err == nil {
		return xt, nil
	}
	return r.cur.Load().types.FindExtensionByName(field)
}

// FindExtensionByNumber implements [protoregistry.ExtensionTypeResolver].
func (r *Registry) FindExtensionByNumber(message protoreflect.FullName, field protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	if xt, err := protoregistry.GlobalTypes.FindExtensionByNumber(message, field); err == nil {
		return xt, nil
	}
	return r.cur.Load().types.FindExtensionByNumber(message, field)
}

// RangeExtensionsByMessage is what gRPC reflection needs besides the above.
func (r *Registry) RangeExtensionsByMessage(message protoreflect.FullName, f func(protoreflect.ExtensionType) bool) {
	done := false
	protoregistry.GlobalTypes.RangeExtensionsByMessage(message, func(xt protoreflect.ExtensionType) bool {
		done = !f(xt)
		return !done
	})
	if !done {
		r.cur.Load().types.RangeExtensionsByMessage(message, f)
	}
}

// FindFileByPath implements [protodesc.Resolver], for reflection.
func (r *Registry) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	return filesChain{protoregistry.GlobalFiles, r.cur.Load().files}.FindFileByPath(path)
}

// FindDescriptorByName implements [protodesc.Resolver], for reflection.
func (r *Registry) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	return filesChain{protoregistry.GlobalFiles, r.cur.Load().files}.FindDescriptorByName(name)
}

// filesChain resolves files and descriptors from the first registry that has
// them.
type filesChain []*protoregistry.Files

func (c filesChain) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	for _, f := range c {
		if fd, err := f.FindFileByPath(path); err == nil {
			return fd, nil
		}
	}
	return nil, fmt.Errorf("file %q: %w", path, protoregistry.NotFound)
}

func (c filesChain) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	for _, f := range c {
		if d, err := f.FindDescriptorByName(name); err == nil {
			return d, nil
		}
	}
	return nil, fmt.Errorf("descriptor %q: %w", name, protoregistry.NotFound)
}

// loadTypeSet reads and links the descriptor sets at paths.
func loadTypeSet(paths []string) (*typeSet, error) {
	l := newSetLoader()
	for _, p := range paths {
		if err := l.read(p); err != nil {
			return nil, err
		}
	}
	return l.finish()
}

func newSetLoader() *setLoader {
	return &setLoader{
		protos: map[string]*descriptorpb.FileDescriptorProto{},
		origin: map[string]string{},
		files:  &protoregistry.Files{},
	}
}

// finish links every file read and builds their types.
func (l *setLoader) finish() (*typeSet, error) {
	for _, p := range l.order {
		if err := l.link(p, nil); err != nil {
			return nil, err
		}
	}
	types := &protoregistry.Types{}
	var err error
	l.files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		err = registerTypes(types, fd.Messages(), fd.Enums(), fd.Extensions())
		if err != nil {
			err = fmt.Errorf("descriptor set %s: %w", l.origin[fd.Path()], err)
		}
		return err == nil
	})
	if err != nil {
		return nil, err
	}
	return &typeSet{files: l.files, types: types, origin: l.origin, gen: generations.Add(1)}, nil
}

// setLoader links the files of several descriptor sets into one registry.
type setLoader struct {
	protos map[string]*descriptorpb.FileDescriptorProto // by file path
	origin map[string]string                            // file path -> the set it came from
	order  []string                                     // file paths, as read
	files  *protoregistry.Files
}

func (l *setLoader) read(setPath string) error {
	raw, err := os.ReadFile(setPath) //nolint:gosec // the operator names the file on the command line
	if err != nil {
		return fmt.Errorf("descriptor set: %w", err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(raw, &set); err != nil {
		return fmt.Errorf("descriptor set %s is not a FileDescriptorSet (build it with `buf build -o FILE.binpb` or `protoc --include_imports --descriptor_set_out=FILE`): %w", setPath, err)
	}
	return l.add(setPath, &set)
}

// add takes the files of set, which origin names in errors.
func (l *setLoader) add(origin string, set *descriptorpb.FileDescriptorSet) error {
	setPath := origin
	if len(set.GetFile()) == 0 {
		return fmt.Errorf("descriptor set %s holds no files", setPath)
	}
	for _, fdp := range set.GetFile() {
		name := fdp.GetName()
		if prev, ok := l.protos[name]; ok {
			if !proto.Equal(prev, fdp) {
				return fmt.Errorf("descriptor sets %s and %s both define %s, differently: load one version of each file", l.origin[name], setPath, name)
			}
			continue
		}
		l.protos[name] = fdp
		l.origin[name] = setPath
		l.order = append(l.order, name)
	}
	return nil
}

// link registers the file at path after its imports. stack holds the files
// being linked, to report an import cycle instead of recursing forever.
func (l *setLoader) link(path string, stack []string) error {
	if compiled, err := protoregistry.GlobalFiles.FindFileByPath(path); err == nil {
		return l.checkCompiledCopy(compiled) // that copy wins
	}
	if _, err := l.files.FindFileByPath(path); err == nil {
		return nil // linked already
	}
	fdp, ok := l.protos[path]
	if !ok {
		importer := stack[len(stack)-1]
		return fmt.Errorf("descriptor set %s: %s imports %s, which is in no descriptor set: build the set with its imports (buf build includes them; protoc needs --include_imports)", l.origin[importer], importer, path)
	}
	for _, s := range stack {
		if s == path {
			return fmt.Errorf("descriptor set %s: import cycle through %s", l.origin[path], path)
		}
	}
	for _, dep := range fdp.GetDependency() {
		if err := l.link(dep, append(stack, path)); err != nil {
			return err
		}
	}
	fd, err := protodesc.NewFile(fdp, filesChain{protoregistry.GlobalFiles, l.files})
	if err != nil {
		return fmt.Errorf("descriptor set %s: file %s: %w", l.origin[path], path, err)
	}
	if err := checkNotCompiledIn(fd); err != nil {
		return fmt.Errorf("descriptor set %s: %w", l.origin[path], err)
	}
	if err := l.files.RegisterFile(fd); err != nil {
		return fmt.Errorf("descriptor set %s: file %s: %w", l.origin[path], path, err)
	}
	return nil
}

// checkCompiledCopy accepts a set's copy of a file the bridge has compiled
// in only when it is the same file: the same messages, fields, enums and
// services, whatever its options or comments say. Then the compiled-in copy
// serves, and renders exactly as the set's would. A copy that differs (a
// message added, a field changed) would be ignored without a word, its new
// types unknown: that is an error that names the file and what to do. The
// well-known types (google/protobuf/) are exempt: a set carries the copy of
// whichever protobuf release built it, and the bridge's own serves them.
func (l *setLoader) checkCompiledCopy(compiled protoreflect.FileDescriptor) error {
	path := compiled.Path()
	fdp := l.protos[path]
	if fdp == nil || strings.HasPrefix(path, "google/protobuf/") {
		return nil
	}
	loaded, err := protodesc.NewFile(fdp, filesChain{protoregistry.GlobalFiles, l.files})
	if err == nil {
		if diff := shapeDiff(compiled, loaded); diff != "" {
			err = errors.New(diff)
		}
	}
	if err != nil {
		return fmt.Errorf("descriptor set %s: file %s is compiled into the bridge, and the set's copy differs (%w): the compiled-in copy would be used and the set's ignored; give your file its own path and package (for example acme/%s with package acme.%s), or leave it out of the set", l.origin[path], path, err, path, compiled.Package())
	}
	return nil
}

// shapeDiff describes the first difference between a and b in what renders
// an event: message and field names, numbers, kinds and JSON names; enum
// values; services and methods. "" when there is none.
func shapeDiff(a, b protoreflect.FileDescriptor) string {
	if a.Package() != b.Package() {
		return fmt.Sprintf("package %s, not %s", b.Package(), a.Package())
	}
	if d := messagesDiff(a.Messages(), b.Messages()); d != "" {
		return d
	}
	if d := enumsDiff(a.Enums(), b.Enums()); d != "" {
		return d
	}
	as, bs := a.Services(), b.Services()
	for i := range max(as.Len(), bs.Len()) {
		if i >= as.Len() || i >= bs.Len() || as.Get(i).FullName() != bs.Get(i).FullName() || as.Get(i).Methods().Len() != bs.Get(i).Methods().Len() {
			return "its services differ"
		}
	}
	return ""
}

func messagesDiff(a, b protoreflect.MessageDescriptors) string {
	for i := range b.Len() {
		bm := b.Get(i)
		am := a.ByName(bm.Name())
		if am == nil {
			return fmt.Sprintf("it defines %s, which the compiled-in copy does not", bm.FullName())
		}
		if am.Fields().Len() != bm.Fields().Len() {
			return fmt.Sprintf("%s has %d fields, not %d", bm.FullName(), bm.Fields().Len(), am.Fields().Len())
		}
		for j := range bm.Fields().Len() {
			bf := bm.Fields().Get(j)
			af := am.Fields().ByNumber(bf.Number())
			if af == nil || af.Name() != bf.Name() || af.Kind() != bf.Kind() || af.Cardinality() != bf.Cardinality() ||
				af.JSONName() != bf.JSONName() || fieldTypeName(af) != fieldTypeName(bf) {
				return fmt.Sprintf("field %s differs", bf.FullName())
			}
		}
		if d := messagesDiff(am.Messages(), bm.Messages()); d != "" {
			return d
		}
		if d := enumsDiff(am.Enums(), bm.Enums()); d != "" {
			return d
		}
	}
	if a.Len() != b.Len() {
		return "it lacks messages of the compiled-in copy"
	}
	return ""
}

func enumsDiff(a, b protoreflect.EnumDescriptors) string {
	if a.Len() != b.Len() {
		return "its enums differ"
	}
	for i := range b.Len() {
		be := b.Get(i)
		ae := a.ByName(be.Name())
		if ae == nil || ae.Values().Len() != be.Values().Len() {
			return fmt.Sprintf("enum %s differs", be.FullName())
		}
		for j := range be.Values().Len() {
			bv := be.Values().Get(j)
			if av := ae.Values().ByName(bv.Name()); av == nil || av.Number() != bv.Number() {
				return fmt.Sprintf("enum value %s differs", bv.FullName())
			}
		}
	}
	return ""
}

// fieldTypeName is the full name of a field's message or enum type, "" for
// a scalar.
func fieldTypeName(f protoreflect.FieldDescriptor) protoreflect.FullName {
	switch {
	case f.Message() != nil:
		return f.Message().FullName()
	case f.Enum() != nil:
		return f.Enum().FullName()
	}
	return ""
}

// checkNotCompiledIn refuses a loaded file that defines a name the bridge has
// compiled in from another file: which of the two would render is unclear.
func checkNotCompiledIn(fd protoreflect.FileDescriptor) error {
	var err error
	check := func(d protoreflect.Descriptor) {
		if err != nil {
			return
		}
		if c, e := protoregistry.GlobalFiles.FindDescriptorByName(d.FullName()); e == nil {
			err = fmt.Errorf("type %s in %s is compiled into the bridge already (from %s): rename the package, or drop the file from the set", d.FullName(), fd.Path(), c.ParentFile().Path())
		}
	}
	for i := range fd.Messages().Len() {
		check(fd.Messages().Get(i))
	}
	for i := range fd.Enums().Len() {
		check(fd.Enums().Get(i))
	}
	for i := range fd.Services().Len() {
		check(fd.Services().Get(i))
	}
	return err
}

// registerTypes registers dynamic types for messages (nested ones too),
// enums and extensions.
func registerTypes(types *protoregistry.Types, msgs protoreflect.MessageDescriptors, enums protoreflect.EnumDescriptors, exts protoreflect.ExtensionDescriptors) error {
	var errs []error
	for i := range enums.Len() {
		errs = append(errs, types.RegisterEnum(dynamicpb.NewEnumType(enums.Get(i))))
	}
	for i := range exts.Len() {
		errs = append(errs, types.RegisterExtension(dynamicpb.NewExtensionType(exts.Get(i))))
	}
	for i := range msgs.Len() {
		md := msgs.Get(i)
		if md.IsMapEntry() {
			continue
		}
		errs = append(errs, types.RegisterMessage(dynamicpb.NewMessageType(md)))
		errs = append(errs, registerTypes(types, md.Messages(), md.Enums(), md.Extensions()))
	}
	return errors.Join(errs...)
}
