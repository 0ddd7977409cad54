//! Core module to component, with the imports Rust's standard library adds answered inside the
//! component.
//!
//! On `wasm32-wasip2`, std pulls in `wasi:cli/{environment,exit,stdin,stdout,stderr,terminal-*}`
//! and `wasi:random/insecure-seed` for its panic message, `RUST_BACKTRACE` and hash-map seeds.
//! The refresh logic needs none of them, and every import is something a plugin host must grant.
//! So the guest is linked as a core module (`--skip-wit-component`) and encoded here with one
//! small adapter module per such interface (wit-component's adapter mechanism): the component then
//! imports its contract, outgoing HTTP and the clocks, and nothing else.

use std::collections::BTreeMap;
use std::path::Path;

use wasm_encoder::{
    CodeSection, EntityType, ExportKind, ExportSection, Function, FunctionSection, ImportSection,
    MemArg, MemoryType, Module, TypeSection, ValType,
};
use wit_component::{ComponentEncoder, StringEncoding};

/// What an answered function does.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// Traps. For calls std makes only on its way to a panic, which traps anyway.
    Trap,
    /// Nothing: drops of resources no answer hands out.
    Nothing,
    /// Writes this many zero bytes at the return pointer: an empty list, or `none`.
    Zeros(u32),
    /// Writes two 64-bit hash-map seeds at the return pointer, mixed from the monotonic clock.
    Seed,
}

/// Interface (without its version), function, answer. An interface is answered only when every
/// function the module imports from it is listed; otherwise it stays an import, and the test of
/// the published imports fails.
const ANSWERS: &[(&str, &str, Answer)] = &[
    // An empty environment: no RUST_BACKTRACE, no anything.
    ("wasi:cli/environment", "get-environment", Answer::Zeros(8)),
    ("wasi:cli/exit", "exit", Answer::Trap),
    ("wasi:cli/stdin", "get-stdin", Answer::Trap),
    ("wasi:cli/stdout", "get-stdout", Answer::Trap),
    ("wasi:cli/stderr", "get-stderr", Answer::Trap),
    // `none`: not a terminal.
    (
        "wasi:cli/terminal-stdin",
        "get-terminal-stdin",
        Answer::Zeros(1),
    ),
    (
        "wasi:cli/terminal-stdout",
        "get-terminal-stdout",
        Answer::Zeros(1),
    ),
    (
        "wasi:cli/terminal-stderr",
        "get-terminal-stderr",
        Answer::Zeros(1),
    ),
    (
        "wasi:cli/terminal-input",
        "[resource-drop]terminal-input",
        Answer::Nothing,
    ),
    (
        "wasi:cli/terminal-output",
        "[resource-drop]terminal-output",
        Answer::Nothing,
    ),
    ("wasi:random/insecure-seed", "insecure-seed", Answer::Seed),
];

/// Where the seed answer reads the time: an interface the component imports anyway (the
/// `wasi:http` types use it). Its version is the one in `wit/deps`.
const CLOCK_INTERFACE: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// The component for the core module `core`. With `answer_std` the imports std adds are answered
/// inside; without it the component imports them, as `wasm-component-ld` would have made it.
pub fn componentize(core: &[u8], answer_std: bool, wit_dir: &Path) -> Result<Vec<u8>, String> {
    let mut encoder = ComponentEncoder::default();
    encoder.validate(true);
    encoder.module(core).map_err(|e| format!("{e:#}"))?;
    if answer_std {
        for (module, functions) in answerable_imports(core)? {
            let adapter = adapter(&functions, wit_dir)
                .map_err(|e| format!("the adapter answering {module}: {e}"))?;
            encoder
                .adapter(&module, &adapter)
                .map_err(|e| format!("the adapter answering {module}: {e:#}"))?;
        }
    }
    encoder.encode().map_err(|e| format!("{e:#}"))
}

/// A function the core module imports, with its core signature and the answer it gets.
struct Imported {
    name: String,
    params: Vec<ValType>,
    results: Vec<ValType>,
    answer: Answer,
}

/// A function type: its parameters and results.
type Signature = (Vec<ValType>, Vec<ValType>);

/// The module's imports grouped by import module, keeping only the modules that are fully
/// answerable.
fn answerable_imports(core: &[u8]) -> Result<BTreeMap<String, Vec<Imported>>, String> {
    let mut types: Vec<Signature> = Vec::new();
    let mut by_module: BTreeMap<String, Vec<Option<Imported>>> = BTreeMap::new();
    for payload in wasmparser::Parser::new(0).parse_all(core) {
        match payload.map_err(|e| e.to_string())? {
            wasmparser::Payload::TypeSection(section) => types.extend(function_types(section)?),
            wasmparser::Payload::ImportSection(section) => {
                for import in section.into_imports() {
                    let import = import.map_err(|e| e.to_string())?;
                    let interface = import.module.split('@').next().unwrap_or_default();
                    if !ANSWERS.iter().any(|(known, _, _)| *known == interface) {
                        continue;
                    }
                    let wasmparser::TypeRef::Func(index) = import.ty else {
                        continue;
                    };
                    let (params, results) = types
                        .get(index as usize)
                        .cloned()
                        .ok_or("an import names a type that does not exist")?;
                    let answer = ANSWERS
                        .iter()
                        .find(|(known, name, _)| *known == interface && *name == import.name)
                        .map(|(_, _, answer)| *answer);
                    by_module
                        .entry(import.module.to_owned())
                        .or_default()
                        .push(answer.map(|answer| Imported {
                            name: import.name.to_owned(),
                            params,
                            results,
                            answer,
                        }));
                }
            }
            _ => {}
        }
    }
    Ok(fully_answered(by_module))
}

/// The parameter and result types of each function type in `section`, in order.
fn function_types(section: wasmparser::TypeSectionReader<'_>) -> Result<Vec<Signature>, String> {
    let mut types = Vec::new();
    for ty in section.into_iter_err_on_gc_types() {
        let ty = ty.map_err(|e| e.to_string())?;
        types.push((
            ty.params().iter().map(val_type).collect::<Result<_, _>>()?,
            ty.results()
                .iter()
                .map(val_type)
                .collect::<Result<_, _>>()?,
        ));
    }
    Ok(types)
}

/// The import modules every function of which has an answer; the others stay imports.
fn fully_answered(
    by_module: BTreeMap<String, Vec<Option<Imported>>>,
) -> BTreeMap<String, Vec<Imported>> {
    let mut answerable = BTreeMap::new();
    for (module, functions) in by_module {
        match functions.into_iter().collect::<Option<Vec<_>>>() {
            Some(functions) => {
                answerable.insert(module, functions);
            }
            None => println!(
                "cargo::warning={module} has a function without an answer; the component keeps importing it"
            ),
        }
    }
    answerable
}

fn val_type(ty: &wasmparser::ValType) -> Result<ValType, String> {
    match ty {
        wasmparser::ValType::I32 => Ok(ValType::I32),
        wasmparser::ValType::I64 => Ok(ValType::I64),
        wasmparser::ValType::F32 => Ok(ValType::F32),
        wasmparser::ValType::F64 => Ok(ValType::F64),
        other => Err(format!("unexpected value type {other:?} in an import")),
    }
}

/// A core module exporting `functions` under their import names. It uses the main module's
/// memory (wit-component wires `env.memory`) and, for the seed, the monotonic clock.
fn adapter(functions: &[Imported], wit_dir: &Path) -> Result<Vec<u8>, String> {
    check_signatures(functions)?;
    let writes = |f: &Imported| matches!(f.answer, Answer::Zeros(_) | Answer::Seed);
    let needs_clock = functions.iter().any(|f| matches!(f.answer, Answer::Seed));

    let mut types = TypeSection::new();
    let mut imports = ImportSection::new();
    let mut defined = FunctionSection::new();
    let mut exports = ExportSection::new();
    let mut code = CodeSection::new();
    if functions.iter().any(writes) {
        imports.import("env", "memory", EntityType::Memory(MAIN_MEMORY));
    }
    let mut imported_functions = 0;
    if needs_clock {
        types.ty().function([], [ValType::I64]);
        imports.import(CLOCK_INTERFACE, "now", EntityType::Function(0));
        imported_functions = 1;
    }
    for (i, f) in functions.iter().enumerate() {
        let type_index = types.len();
        types
            .ty()
            .function(f.params.iter().copied(), f.results.iter().copied());
        defined.function(type_index);
        exports.export(&f.name, ExportKind::Func, imported_functions + i as u32);
        code.function(&body(f.answer));
    }

    let mut module = Module::new();
    module
        .section(&types)
        .section(&imports)
        .section(&defined)
        .section(&exports)
        .section(&code);
    let mut bytes = module.finish();
    if needs_clock {
        embed_clock_import(&mut bytes, wit_dir)?;
    }
    Ok(bytes)
}

/// The main module's memory, as the adapter imports it.
const MAIN_MEMORY: MemoryType = MemoryType {
    minimum: 0,
    maximum: None,
    memory64: false,
    shared: false,
    page_size_log2: None,
};

/// The clock's function index in an adapter that imports it (the first and only import).
const CLOCK_NOW: u32 = 0;

/// Each answer fits its import's signature: writes take one pointer and return nothing.
fn check_signatures(functions: &[Imported]) -> Result<(), String> {
    for f in functions {
        let pointer_only = f.params == [ValType::I32] && f.results.is_empty();
        let fits = match f.answer {
            Answer::Trap => true,
            Answer::Nothing => f.results.is_empty(),
            Answer::Zeros(_) | Answer::Seed => pointer_only,
        };
        if !fits {
            return Err(format!(
                "{} has an unexpected signature for {:?}",
                f.name, f.answer
            ));
        }
    }
    Ok(())
}

/// The body of a function that gives `answer`.
fn body(answer: Answer) -> Function {
    let mut body = Function::new(if matches!(answer, Answer::Seed) {
        vec![(1, ValType::I64)]
    } else {
        vec![]
    });
    let mut sink = body.instructions();
    match answer {
        Answer::Trap => {
            sink.unreachable();
        }
        Answer::Nothing => {}
        Answer::Zeros(bytes) => {
            let mut offset = 0;
            while offset + 4 <= bytes {
                sink.local_get(0)
                    .i32_const(0)
                    .i32_store(mem(offset.into(), 2));
                offset += 4;
            }
            while offset < bytes {
                sink.local_get(0)
                    .i32_const(0)
                    .i32_store8(mem(offset.into(), 0));
                offset += 1;
            }
        }
        Answer::Seed => {
            // Two keys from one reading: SipHash only needs them unknown to whoever writes
            // the document, which the clock reading at first use is.
            sink.call(CLOCK_NOW).local_set(1);
            sink.local_get(0)
                .local_get(1)
                .i64_const(0x243f_6a88_85a3_08d3)
                .i64_xor()
                .i64_store(mem(0, 3));
            sink.local_get(0)
                .local_get(1)
                .i64_const(0x9e37_79b9_7f4a_7c15_u64 as i64)
                .i64_mul()
                .i64_store(mem(8, 3));
        }
    }
    sink.end();
    body
}

fn mem(offset: u64, align: u32) -> MemArg {
    MemArg {
        offset,
        align,
        memory_index: 0,
    }
}

/// An adapter's imports of WIT interfaces need the component-type metadata a bindings generator
/// would have embedded: a one-line world importing the clock, resolved against `wit/deps`.
fn embed_clock_import(bytes: &mut Vec<u8>, wit_dir: &Path) -> Result<(), String> {
    let mut resolve = wit_parser::Resolve::default();
    resolve
        .push_dir(wit_dir)
        .map_err(|e| format!("reading {}: {e:#}", wit_dir.display()))?;
    let package = resolve
        .push_str(
            "std-answers.wit",
            &format!(
                "package entelix:std-answers;\nworld clock {{\n  import {CLOCK_INTERFACE};\n}}\n"
            ),
        )
        .map_err(|e| format!("{e:#}"))?;
    let world = resolve
        .select_world(&[package], Some("clock"))
        .map_err(|e| format!("{e:#}"))?;
    wit_component::embed_component_metadata(bytes, &resolve, world, StringEncoding::UTF8, false)
        .map_err(|e| format!("{e:#}"))
}
