#!/usr/bin/env node
// A stand-in for the native `solc` binary, built on solc-js (the npm `solc` package pinned in
// package.json), so that py-solc-x, Forge and Brownie can compile without downloading a compiler.
//
// Supported: --version, --help, --license, --standard-json (JSON on stdin or from a file, JSON on
// stdout), --combined-json with source files and `prefix=path` remappings, and the flags that shape
// a compilation (--optimize, --optimize-runs, --evm-version, --via-ir, --base-path, --include-path,
// --allow-paths, --libraries, --metadata-hash, --revert-strings, --output-dir, --overwrite,
// --pretty-json, --json-indent). Other harmless flags are ignored.
//
// Imports are read from disk: against the base path (default: the working directory), every
// include path and every allowed path, the working directory, this project's root, and finally
// `<each of those>/node_modules/<import>`, so `@openzeppelin/...` resolves without remappings.
'use strict';

const fs = require('fs');
const path = require('path');

const PROJECT_ROOT = path.resolve(__dirname, '..');

const COMBINED_JSON_COMPONENTS = {
  abi: (c) => c.abi,
  asm: (c) => c.evm && c.evm.legacyAssembly,
  ast: null, // per source, not per contract
  bin: (c) => c.evm && c.evm.bytecode && c.evm.bytecode.object,
  'bin-runtime': (c) => c.evm && c.evm.deployedBytecode && c.evm.deployedBytecode.object,
  devdoc: (c) => c.devdoc,
  'function-debug': (c) => c.evm && c.evm.bytecode && c.evm.bytecode.functionDebugData,
  'function-debug-runtime': (c) =>
    c.evm && c.evm.deployedBytecode && c.evm.deployedBytecode.functionDebugData,
  'generated-sources': (c) => c.evm && c.evm.bytecode && c.evm.bytecode.generatedSources,
  'generated-sources-runtime': (c) =>
    c.evm && c.evm.deployedBytecode && c.evm.deployedBytecode.generatedSources,
  hashes: (c) => c.evm && c.evm.methodIdentifiers,
  metadata: (c) => c.metadata,
  opcodes: (c) => c.evm && c.evm.bytecode && c.evm.bytecode.opcodes,
  srcmap: (c) => c.evm && c.evm.bytecode && c.evm.bytecode.sourceMap,
  'srcmap-runtime': (c) => c.evm && c.evm.deployedBytecode && c.evm.deployedBytecode.sourceMap,
  'storage-layout': (c) => c.storageLayout,
  'transient-storage-layout': (c) => c.transientStorageLayout,
  userdoc: (c) => c.userdoc,
};

// Standard-JSON output selection for each combined-json component.
const COMPONENT_SELECTION = {
  abi: ['abi'],
  asm: ['evm.legacyAssembly'],
  ast: [],
  bin: ['evm.bytecode.object'],
  'bin-runtime': ['evm.deployedBytecode.object'],
  devdoc: ['devdoc'],
  'function-debug': ['evm.bytecode.functionDebugData'],
  'function-debug-runtime': ['evm.deployedBytecode.functionDebugData'],
  'generated-sources': ['evm.bytecode.generatedSources'],
  'generated-sources-runtime': ['evm.deployedBytecode.generatedSources'],
  hashes: ['evm.methodIdentifiers'],
  metadata: ['metadata'],
  opcodes: ['evm.bytecode.opcodes'],
  srcmap: ['evm.bytecode.sourceMap'],
  'srcmap-runtime': ['evm.deployedBytecode.sourceMap'],
  'storage-layout': ['storageLayout'],
  'transient-storage-layout': ['transientStorageLayout'],
  userdoc: ['userdoc'],
};

// Options of native solc that take a value (so the value is not mistaken for a source file).
const OPTIONS_WITH_VALUE = new Set([
  '--base-path', '--include-path', '--allow-paths', '--output-dir', '-o', '--evm-version',
  '--eof-version', '--optimize-runs', '--yul-optimizations', '--revert-strings', '--debug-info',
  '--metadata-hash', '--combined-json', '--libraries', '--json-indent', '--stop-after',
  '--input-file', '--model-checker-contracts', '--model-checker-engine',
  '--model-checker-ext-calls', '--model-checker-invariants', '--model-checker-solvers',
  '--model-checker-targets', '--model-checker-timeout', '--model-checker-bmc-loop-iterations',
  '--machine', '--yul-dialect',
]);

// Flags without a value that we accept (applied or deliberately ignored).
const FLAGS = new Set([
  '--help', '-h', '--version', '--license', '--standard-json', '--optimize', '--via-ir',
  '--experimental-via-ir', '--optimize-yul', '--no-optimize-yul', '--pretty-json', '--color',
  '--no-color', '--overwrite', '--metadata-literal', '--ignore-missing', '--error-recovery',
  '--no-cbor-metadata', '--model-checker-show-unproved', '--model-checker-show-proved-safe',
  '--model-checker-show-unsupported', '--model-checker-div-mod-no-slacks',
  '--model-checker-print-query',
]);

// Output flags of native solc that print text per contract; not implemented here.
const UNSUPPORTED_OUTPUTS = new Set([
  '--bin', '--bin-runtime', '--abi', '--hashes', '--asm', '--asm-json', '--ast-compact-json',
  '--storage-layout', '--transient-storage-layout', '--userdoc', '--devdoc', '--metadata',
  '--opcodes', '--ir', '--ir-optimized', '--ir-ast-json', '--ir-optimized-ast-json', '--gas',
  '--link', '--assemble', '--strict-assembly', '--yul', '--import-ast', '--import-asm-json',
  '--lsp', '--method-identifiers',
]);

const HELP = `solc, the Solidity commandline compiler.

This is tools/solc.js: solc-js (the npm "solc" package) behind the command line of native solc,
for py-solc-x, Forge and Brownie on machines that cannot download a native compiler.

Usage: solc [options] [input_file...]
Compiles the given Solidity input files (or the standard input if "-" is used as a file name)
and outputs the components specified in the options. Imports are remapped with
context:prefix=path arguments.

General Information:
  --help               Show help message and exit.
  --version            Show version and exit.
  --license            Show licensing information and exit.

Input Options:
  --base-path path     Use the given path as the root of the source tree instead of the working
                       directory.
  --include-path path  Make an additional source directory available to the default import
                       callback. Can be given multiple times.
  --allow-paths path(s)
                       Allow a given path for imports. A list of paths can be supplied by
                       separating them with a comma.

Output Options:
  -o [ --output-dir ] path
                       If given, creates one file per output component in the specified directory.
  --overwrite          Overwrite existing files (used together with -o).
  --evm-version version
                       Select desired EVM version (e.g. cancun, prague).
  --via-ir             Use the new IR-based code generator.
  --revert-strings debug,default,strip,verboseDebug
                       Strip revert (and require) reason strings or add additional debugging
                       information.
  --metadata-hash ipfs,none,swarm
                       Choose hash method for the bytecode metadata or disable it.
  --metadata-literal   Store referenced sources as literal data in the metadata output.

Alternative Input Modes:
  --standard-json      Switch to Standard JSON input / output mode, ignoring all options. It reads
                       from standard input, if no input file was given, otherwise it reads from the
                       provided input file. The result will be written to standard output.

Output Formats:
  --combined-json ${Object.keys(COMBINED_JSON_COMPONENTS).join(',')}
                       Output a single json document containing the specified information.
  --pretty-json        Output JSON in pretty format.
  --json-indent N      Indent pretty-printed JSON with N spaces. Enables '--pretty-json'
                       automatically.

Optimizer Options:
  --optimize           Enable bytecode optimizer.
  --optimize-runs n    The number of runs specifies roughly how often each opcode of the deployed
                       code will be executed across the lifetime of the contract. (default: 200)

Linker Options:
  --libraries libs     Direct string or file containing library addresses. Syntax:
                       <libraryName>=<address> [, or whitespace] ...
`;

function solcPackageDir() {
  return path.dirname(require.resolve('solc/package.json', { paths: [PROJECT_ROOT, __dirname] }));
}

function loadSolc() {
  return require(solcPackageDir());
}

// solc-js reports "0.8.37+commit.f401782d.Emscripten.clang"; native Linux builds say ".Linux.g++".
function nativeVersion(solc) {
  return solc.version().replace(/\.Emscripten\.clang$/, '.Linux.g++');
}

// `--version` is asked before every compilation (py-solc-x, Forge) and loading the compiler
// costs a third of a second, so the answer is kept in node_modules/.cache, keyed by the
// compiler file's size and mtime. Without a writable cache it is simply computed each time.
function cachedNativeVersion() {
  const dir = solcPackageDir();
  const soljson = fs.statSync(path.join(dir, 'soljson.js'));
  const key = `${soljson.size}:${soljson.mtimeMs}`;
  const cacheFile = path.join(dir, '..', '.cache', 'bulwark-solc-js', 'version.json');
  try {
    const cached = JSON.parse(fs.readFileSync(cacheFile, 'utf8'));
    if (cached.key === key && typeof cached.version === 'string') return cached.version;
  } catch (err) {
    // no cache yet
  }
  const version = nativeVersion(loadSolc());
  try {
    fs.mkdirSync(path.dirname(cacheFile), { recursive: true });
    const tmp = `${cacheFile}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify({ key, version }));
    fs.renameSync(tmp, cacheFile);
  } catch (err) {
    // read-only node_modules: fine, just slower
  }
  return version;
}

function sleepMs(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

// Write everything, even when stdout is a non-blocking pipe that takes 64 KiB at a time.
function writeAll(fd, text) {
  const buf = Buffer.from(text, 'utf8');
  let offset = 0;
  while (offset < buf.length) {
    try {
      offset += fs.writeSync(fd, buf, offset, buf.length - offset);
    } catch (err) {
      if (err.code === 'EAGAIN') {
        sleepMs(2);
        continue;
      }
      throw err;
    }
  }
}

function fail(message, code = 1) {
  writeAll(2, message.endsWith('\n') ? message : message + '\n');
  process.exitCode = code;
}

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on('data', (chunk) => chunks.push(chunk));
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    process.stdin.on('error', reject);
  });
}

function parseArgs(argv) {
  const opts = {
    mode: null, // 'help' | 'version' | 'license' | 'standard-json' | 'compile'
    combinedJson: null,
    basePath: null,
    includePaths: [],
    allowPaths: [],
    outputDir: null,
    overwrite: false,
    optimize: false,
    optimizeRuns: null,
    evmVersion: null,
    viaIR: false,
    metadataHash: null,
    metadataLiteral: false,
    revertStrings: null,
    libraries: [],
    prettyJson: false,
    jsonIndent: null,
    noCborMetadata: false,
    files: [],
    remappings: [],
    unsupported: [],
  };
  const modes = [];
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value = null;
    if (arg.startsWith('--') && arg.includes('=')) {
      [arg, value] = [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)];
    }
    const takeValue = () => {
      if (value !== null) return value;
      if (i + 1 >= argv.length) throw new Error(`the required argument for option '${arg}' is missing`);
      return argv[++i];
    };
    if (arg === '-' || !arg.startsWith('-')) {
      if (arg !== '-' && arg.includes('=')) opts.remappings.push(arg);
      else opts.files.push(arg);
      continue;
    }
    switch (arg) {
      case '--help': case '-h': modes.push('help'); break;
      case '--version': modes.push('version'); break;
      case '--license': modes.push('license'); break;
      case '--standard-json': modes.push('standard-json'); break;
      case '--combined-json': opts.combinedJson = takeValue(); break;
      case '--base-path': opts.basePath = takeValue(); break;
      case '--include-path': opts.includePaths.push(takeValue()); break;
      case '--allow-paths':
        opts.allowPaths.push(...takeValue().split(',').filter((p) => p.length > 0));
        break;
      case '--output-dir': case '-o': opts.outputDir = takeValue(); break;
      case '--overwrite': opts.overwrite = true; break;
      case '--optimize': opts.optimize = true; break;
      case '--optimize-runs': opts.optimizeRuns = parseInt(takeValue(), 10); break;
      case '--evm-version': opts.evmVersion = takeValue(); break;
      case '--via-ir': case '--experimental-via-ir': opts.viaIR = true; break;
      case '--metadata-hash': opts.metadataHash = takeValue(); break;
      case '--metadata-literal': opts.metadataLiteral = true; break;
      case '--no-cbor-metadata': opts.noCborMetadata = true; break;
      case '--revert-strings': opts.revertStrings = takeValue(); break;
      case '--libraries': opts.libraries.push(takeValue()); break;
      case '--pretty-json': opts.prettyJson = true; break;
      case '--json-indent': opts.jsonIndent = parseInt(takeValue(), 10); opts.prettyJson = true; break;
      case '--input-file': opts.files.push(takeValue()); break;
      default:
        if (UNSUPPORTED_OUTPUTS.has(arg)) opts.unsupported.push(arg);
        else if (OPTIONS_WITH_VALUE.has(arg)) takeValue();
        // Any other flag (known-harmless or unknown) is ignored.
        break;
    }
  }
  for (const m of ['help', 'version', 'license', 'standard-json']) {
    if (modes.includes(m)) {
      opts.mode = m;
      break;
    }
  }
  if (opts.mode === null) opts.mode = 'compile';
  return opts;
}

function toPosix(p) {
  return p.split(path.sep).join('/');
}

function isInside(child, parent) {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

function unique(items) {
  return [...new Set(items)];
}

// The import callback: source unit name -> {contents} or {error}.
function makeImportCallback(opts) {
  const cwd = process.cwd();
  const roots = unique(
    [opts.basePath ? path.resolve(opts.basePath) : cwd]
      .concat(opts.includePaths.map((p) => path.resolve(p)))
      .concat(opts.allowPaths.map((p) => path.resolve(p)))
      .concat([cwd, PROJECT_ROOT]),
  );
  return function findImport(sourceUnitName) {
    let candidates;
    if (path.isAbsolute(sourceUnitName)) {
      candidates = [sourceUnitName];
    } else {
      candidates = roots.map((r) => path.resolve(r, sourceUnitName));
      candidates = candidates.concat(roots.map((r) => path.resolve(r, 'node_modules', sourceUnitName)));
    }
    candidates = unique(candidates);
    for (const candidate of candidates) {
      try {
        if (fs.statSync(candidate).isFile()) {
          return { contents: fs.readFileSync(candidate, 'utf8') };
        }
      } catch (err) {
        // not here; try the next location
      }
    }
    return {
      error:
        'File not found. Searched the following locations: ' +
        candidates.map((c) => `"${c}"`).join(', ') + '.',
    };
  };
}

function stringify(value, opts) {
  if (!opts.prettyJson) return JSON.stringify(value);
  return JSON.stringify(value, null, opts.jsonIndent === null ? 2 : opts.jsonIndent);
}

async function runStandardJson(solc, opts) {
  let input;
  if (opts.files.length > 0 && opts.files[0] !== '-') {
    input = fs.readFileSync(opts.files[0], 'utf8');
  } else {
    input = await readStdin();
  }
  let output = solc.compile(input, { import: makeImportCallback(opts) });
  if (opts.prettyJson) output = stringify(JSON.parse(output), opts);
  writeAll(1, output.endsWith('\n') ? output : output + '\n');
}

// Source unit name of a file given on the command line, as native solc derives it: relative to
// the base path (default: working directory) or an include path when inside one, else absolute.
function cliSourceUnitName(file, opts) {
  const abs = path.resolve(file);
  const roots = [opts.basePath ? path.resolve(opts.basePath) : process.cwd()].concat(
    opts.includePaths.map((p) => path.resolve(p)),
  );
  for (const root of roots) {
    if (isInside(abs, root)) return toPosix(path.relative(root, abs));
  }
  return toPosix(abs);
}

function parseLibraries(specs) {
  const libraries = {};
  for (const spec of specs) {
    const text = fs.existsSync(spec) ? fs.readFileSync(spec, 'utf8') : spec;
    for (const entry of text.split(/[\s,]+/).filter((e) => e.length > 0)) {
      const eq = entry.lastIndexOf('=');
      if (eq < 0) throw new Error(`Invalid library specification: ${entry}`);
      const target = entry.slice(0, eq);
      const address = entry.slice(eq + 1);
      const colon = target.lastIndexOf(':');
      const file = colon < 0 ? '' : target.slice(0, colon);
      const name = colon < 0 ? target : target.slice(colon + 1);
      libraries[file] = libraries[file] || {};
      libraries[file][name] = address;
    }
  }
  return libraries;
}

async function runCompile(solc, opts) {
  if (opts.unsupported.length > 0) {
    fail(
      `tools/solc.js: ${opts.unsupported.join(', ')} not supported; ` +
        'use --combined-json or --standard-json.',
    );
    return;
  }
  const components = opts.combinedJson
    ? opts.combinedJson.split(',').map((c) => c.trim()).filter((c) => c.length > 0)
    : [];
  for (const component of components) {
    if (!(component in COMBINED_JSON_COMPONENTS)) {
      fail(`Invalid option to --combined-json: ${component}`);
      return;
    }
  }
  if (opts.files.length === 0) {
    fail('No input files given. If you wish to use the standard input please specify "-" explicitly.');
    return;
  }

  const sources = {};
  for (const file of opts.files) {
    if (file === '-') {
      sources['<stdin>'] = { content: await readStdin() };
    } else {
      if (!fs.existsSync(file) || !fs.statSync(file).isFile()) {
        fail(`"${file}" is not found.`);
        return;
      }
      sources[cliSourceUnitName(file, opts)] = { content: fs.readFileSync(file, 'utf8') };
    }
  }

  const selection = unique(components.flatMap((c) => COMPONENT_SELECTION[c]));
  const settings = {
    optimizer: { enabled: opts.optimize, runs: opts.optimizeRuns === null ? 200 : opts.optimizeRuns },
    remappings: opts.remappings,
    outputSelection: { '*': { '*': selection, '': components.includes('ast') ? ['ast'] : [] } },
  };
  if (opts.evmVersion) settings.evmVersion = opts.evmVersion;
  if (opts.viaIR) settings.viaIR = true;
  if (opts.metadataHash || opts.metadataLiteral || opts.noCborMetadata) {
    settings.metadata = {};
    if (opts.metadataHash) settings.metadata.bytecodeHash = opts.metadataHash;
    if (opts.metadataLiteral) settings.metadata.useLiteralContent = true;
    if (opts.noCborMetadata) settings.metadata.appendCBOR = false;
  }
  if (opts.revertStrings) settings.debug = { revertStrings: opts.revertStrings };
  if (opts.libraries.length > 0) settings.libraries = parseLibraries(opts.libraries);

  const input = { language: 'Solidity', sources, settings };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: makeImportCallback(opts) }));

  const diagnostics = output.errors || [];
  const hasErrors = diagnostics.some((e) => e.severity === 'error');
  for (const d of diagnostics) {
    writeAll(2, (d.formattedMessage || `${d.type}: ${d.message}`).trimEnd() + '\n\n');
  }
  if (hasErrors) {
    process.exitCode = 1;
    return;
  }

  if (components.length === 0) {
    writeAll(1, 'Compiler run successful. No output generated.\n');
    return;
  }

  const result = { contracts: {} };
  for (const [file, contracts] of Object.entries(output.contracts || {})) {
    for (const [name, contract] of Object.entries(contracts)) {
      const entry = {};
      for (const component of components) {
        const getter = COMBINED_JSON_COMPONENTS[component];
        if (getter === null) continue;
        const value = getter(contract);
        entry[component] = value === undefined ? '' : value;
      }
      result.contracts[`${file}:${name}`] = entry;
    }
  }
  const sourceNames = Object.keys(output.sources || {}).sort(
    (a, b) => output.sources[a].id - output.sources[b].id,
  );
  if (components.some((c) => ['ast', 'srcmap', 'srcmap-runtime', 'asm'].includes(c))) {
    result.sourceList = sourceNames;
  }
  result.sources = {};
  for (const name of sourceNames) {
    result.sources[name] = { id: output.sources[name].id };
    if (components.includes('ast')) result.sources[name].AST = output.sources[name].ast;
  }
  result.version = nativeVersion(solc);

  const text = stringify(result, opts) + '\n';
  if (opts.outputDir) {
    const target = path.join(opts.outputDir, 'combined.json');
    if (fs.existsSync(target) && !opts.overwrite) {
      fail(`Refusing to overwrite existing file "${target}" (use --overwrite to force).`);
      return;
    }
    fs.mkdirSync(opts.outputDir, { recursive: true });
    fs.writeFileSync(target, text);
    return;
  }
  writeAll(1, text);
}

async function main(argv) {
  // Only this script writes to stdout (through writeAll); anything the compiler module itself
  // prints goes to stderr, so --standard-json output stays pure JSON.
  console.log = console.error;
  console.info = console.error;
  let opts;
  try {
    opts = parseArgs(argv);
  } catch (err) {
    fail(err.message);
    return;
  }
  if (opts.mode === 'help') {
    writeAll(1, HELP);
    return;
  }
  if (opts.mode === 'version') {
    const version = cachedNativeVersion();
    writeAll(1, `solc, the solidity compiler commandline interface\nVersion: ${version}\n`);
    return;
  }
  const solc = loadSolc();
  if (opts.mode === 'license') {
    writeAll(1, (solc.license ? solc.license() : 'GPL-3.0') + '\n');
  } else if (opts.mode === 'standard-json') {
    await runStandardJson(solc, opts);
  } else {
    await runCompile(solc, opts);
  }
}

const ARGV = process.argv.slice(2);

main(ARGV).catch((err) => {
  const message = `tools/solc.js: ${err && err.stack ? err.stack : err}`;
  try {
    if (ARGV.includes('--standard-json')) {
      // Native solc reports even internal failures as JSON in this mode.
      const error = {
        component: 'general',
        severity: 'error',
        type: 'InternalCompilerError',
        message,
        formattedMessage: message,
      };
      writeAll(1, JSON.stringify({ errors: [error] }) + '\n');
    }
    writeAll(2, message + '\n');
  } catch (ignored) {
    // stdout or stderr is gone; the exit code still tells
  }
  process.exitCode = 1;
});
