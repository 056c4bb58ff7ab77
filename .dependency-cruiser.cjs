/**
 * The layers of docs/architecture.md, enforced: `npm run lint` fails on an
 * import that points the wrong way, and on any import cycle.
 */
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    { name: 'no-cycles', severity: 'error', comment: 'No import cycles, anywhere.', from: {}, to: { circular: true } },
    {
      name: 'format-is-the-foundation',
      severity: 'error',
      comment: 'src/format imports nothing outside src/format: the bytes are defined in one place, with no I/O, backend or CLI.',
      from: { path: '^src/format/' },
      to: { path: '^src/', pathNot: '^src/format/' },
    },
    {
      name: 'vm-interface-stands-on-format-only',
      severity: 'error',
      from: { path: '^src/vm/' },
      to: { path: '^src/', pathNot: '^src/(vm|format)/' },
    },
    {
      name: 'kernel-model-knows-no-snapshot',
      severity: 'error',
      comment: 'The kernel model is what the backends share; it knows KVM semantics, not the writer, reader or CLI.',
      from: { path: '^src/kernel-model/' },
      to: { path: '^src/', pathNot: '^src/(kernel-model|vm|format)/' },
    },
    {
      name: 'backends-know-no-snapshot',
      severity: 'error',
      comment: 'A backend is a VM: it knows the VM interface and the kernel model, never the writer, reader, validators or forensics.',
      from: { path: '^src/backends/' },
      to: { path: '^src/(writer|reader|validate|forensics|workload|vmm|parallel)/' },
    },
    {
      name: 'backends-are-siblings',
      severity: 'error',
      from: { path: '^src/backends/([^/]+)/' },
      to: { path: '^src/backends/', pathNot: '^src/backends/$1/' },
    },
    {
      name: 'writer-and-reader-know-no-backend',
      severity: 'error',
      comment: 'Save, read, restore and verify work on the VM interface only.',
      from: { path: '^src/(writer|reader|validate|parallel)/' },
      to: { path: '^src/(backends|kernel-model|workload|forensics|vmm)/' },
    },
    {
      name: 'store-stands-on-the-snapshot-layers',
      severity: 'error',
      comment: 'The chunk store reads and writes snapshots through format, reader, writer and parallel; it knows no VM backend.',
      from: { path: '^src/store/' },
      to: { path: '^src/(backends|kernel-model|workload|forensics|vmm|validate)/' },
    },
    {
      name: 'nothing-below-reaches-the-store',
      severity: 'error',
      comment: 'The store is a layer above the reader and writer: restore takes its events through an interface (SnapshotEventSource).',
      from: { path: '^src/(format|vm|kernel-model|backends|writer|reader|validate|parallel|io|workload|forensics)/' },
      to: { path: '^src/store/' },
    },
    {
      name: 'live-knows-no-backend',
      severity: 'error',
      comment: 'Pre-copy and the migration stream work on the VM interface, the writer and the format only.',
      from: { path: '^src/live/' },
      to: { path: '^src/(backends|kernel-model|workload|forensics|vmm|reader)/' },
    },
    {
      name: 'koffi-only-through-vmsnap-kvm',
      severity: 'error',
      comment: "The KVM backend loads koffi: only the 'vmsnap/kvm' entry, its small VMM, the CLI and test support reach it.",
      from: { path: '^src/', pathNot: '^src/(kvm\\.ts|vmm/|backends/kvm/)' },
      to: { path: '^src/backends/kvm/' },
    },
    {
      name: 'library-holds-no-test-support',
      severity: 'error',
      comment: 'dist/ is built from src and tools; test support stays out of it.',
      from: { path: '^(src|tools|bench)/' },
      // The store bench starts the tests' Ceph gateway; bench is built into dist/bench, which the package does not ship.
      to: { path: '^(testkit|test)/', pathNot: '^testkit/store/ceph-rgw\\.ts$' },
    },
    {
      name: 'library-knows-no-cli',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(tools|bench)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
