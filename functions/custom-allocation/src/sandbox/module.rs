//! Module validation: a module is accepted only if it compiles within the sandbox limits, imports nothing but
//! `dps.log`, exports the ABI's functions and memory, instantiates under the call limits and speaks our ABI.

use wasmtime::{ExternType, FuncType, InstancePre, Module, ValType};

use super::failure::{describe_error, root_cause};
use super::{ABI_VERSION, Compiled, Entry, ModuleError, Sandbox};
use crate::limits::{CallState, limited_store};

impl Sandbox {
    pub(super) fn validate(&self, bytes: &[u8], sha256: String) -> Result<Compiled, ModuleError> {
        let invalid = |msg: String| ModuleError::Invalid(msg);
        let module = Module::from_binary(&self.engine, bytes).map_err(|e| {
            invalid(format!("The module is not valid WebAssembly within the sandbox limits: {}", root_cause(&e)))
        })?;
        let mut imports = Vec::new();
        for import in module.imports() {
            let name = format!("{}.{}", import.module(), import.name());
            let log_type = FuncType::new(&self.engine, [ValType::I32, ValType::I32], []);
            match import.ty() {
                ExternType::Func(ty) if name == "dps.log" && FuncType::eq(&ty, &log_type) => {}
                _ if name == "dps.log" => {
                    return Err(invalid("The import dps.log must be (func (param i32 i32))".into()));
                }
                _ if import.module().starts_with("wasi") => {
                    return Err(invalid(format!(
                        "The module imports WASI ({name}); policies may not use WASI: build for \
                         wasm32-unknown-unknown with the policy SDK"
                    )));
                }
                _ => {
                    return Err(invalid(format!(
                        "The module imports {name}, which the host does not provide (only dps.log)"
                    )));
                }
            }
            imports.push(name);
        }
        let required: [(&str, &[ValType], &[ValType]); 3] = [
            ("dps_abi_version", &[], &[ValType::I32]),
            ("dps_alloc", &[ValType::I32], &[ValType::I32]),
            ("dps_allocate", &[ValType::I32, ValType::I32], &[ValType::I64]),
        ];
        for (name, params, results) in required {
            let want = FuncType::new(&self.engine, params.iter().cloned(), results.iter().cloned());
            match module.get_export(name) {
                Some(ExternType::Func(ty)) if FuncType::eq(&ty, &want) => {}
                Some(_) => return Err(invalid(format!("The export '{name}' must be {}", describe(params, results)))),
                None => {
                    return Err(invalid(format!(
                        "The module is missing the export '{name}' ({})",
                        describe(params, results)
                    )));
                }
            }
        }
        if !matches!(module.get_export("memory"), Some(ExternType::Memory(_))) {
            return Err(invalid("The module is missing the export 'memory' (its linear memory)".into()));
        }
        let exports = module.exports().map(|e| e.name().to_string()).collect();
        let index = |name: &str| {
            module.get_export_index(name).ok_or_else(|| invalid(format!("The module is missing the export '{name}'")))
        };
        let entry = Entry { memory: index("memory")?, alloc: index("dps_alloc")?, allocate: index("dps_allocate")? };
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| invalid(format!("The module cannot be linked: {}", root_cause(&e))))?;
        let abi_version = self.abi_version(&pre)?;
        if abi_version != ABI_VERSION {
            return Err(invalid(format!(
                "The module declares ABI version {abi_version}; this host speaks version {ABI_VERSION}"
            )));
        }
        Ok(Compiled { sha256, size: bytes.len() as u64, exports, imports, abi_version, pre, entry })
    }

    /// Instantiate under the call limits and ask the module its ABI version (also proves it instantiates).
    fn abi_version(&self, pre: &InstancePre<CallState>) -> Result<u32, ModuleError> {
        let fail = |e: wasmtime::Error| {
            ModuleError::Invalid(format!("The module fails to start under the call limits: {}", describe_error(&e)))
        };
        let mut store = limited_store(&self.engine, &self.limits, self.limits.fuel).map_err(fail)?;
        let instance = pre.instantiate(&mut store).map_err(fail)?;
        let version = instance.get_typed_func::<(), i32>(&mut store, "dps_abi_version").map_err(fail)?;
        let version = version.call(&mut store, ()).map_err(fail)?;
        Ok(u32::try_from(version).unwrap_or(0))
    }
}

fn describe(params: &[ValType], results: &[ValType]) -> String {
    let list = |types: &[ValType]| types.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(" ");
    let mut text = String::from("func");
    if !params.is_empty() {
        text.push_str(&format!(" (param {})", list(params)));
    }
    if !results.is_empty() {
        text.push_str(&format!(" (result {})", list(results)));
    }
    text
}
