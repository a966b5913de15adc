pontoneer::module!(pontoneer_testmod, |_m: &mut pontoneer::ModuleBuilder| Ok(()));
