const _: () = {
    #[automatically_derived]
    impl ::event_runtime::__private::Event for TaskEvent {
        const TYPES: &'static [&'static str] = &[
            "task.created",
            "task.completed",
            "task.reassigned",
        ];
        const VERSION: &'static str = "1.0";
        const TAG: ::core::option::Option<&'static str> = ::core::option::Option::Some(
            "event_type",
        );
        const FIELDS: &'static [&'static str] = &["event_type", "event_id", "task_id"];
        fn event_type(&self) -> &'static str {
            match self {
                Self::Created { .. } => "task.created",
                Self::Completed { .. } => "task.completed",
                Self::Reassigned { .. } => "task.reassigned",
            }
        }
        fn partition_key(&self) -> ::core::option::Option<::std::string::String> {
            match self {
                Self::Created { user_id, .. } => {
                    ::core::option::Option::Some(
                        ::std::string::ToString::to_string(user_id),
                    )
                }
                Self::Completed { user_id, .. } => {
                    ::core::option::Option::Some(
                        ::std::string::ToString::to_string(user_id),
                    )
                }
                Self::Reassigned { new_owner, .. } => {
                    ::core::option::Option::Some(
                        ::std::string::ToString::to_string(new_owner),
                    )
                }
            }
        }
        fn event_id(&self) -> ::core::option::Option<::std::string::String> {
            match self {
                Self::Created { event_id, .. } => {
                    ::core::option::Option::Some(
                        ::std::string::ToString::to_string(event_id),
                    )
                }
                Self::Completed { event_id, .. } => {
                    ::core::option::Option::Some(
                        ::std::string::ToString::to_string(event_id),
                    )
                }
                Self::Reassigned { event_id, .. } => {
                    ::core::option::Option::Some(
                        ::std::string::ToString::to_string(event_id),
                    )
                }
            }
        }
        fn data_version(&self) -> ::core::option::Option<::core::option::Option<&str>> {
            #[allow(unused_imports)]
            use ::event_runtime::__private::{VersionText as _, VersionUnknown as _};
            match self {
                Self::Created { event_version, .. } => {
                    ::event_runtime::__private::VersionProbe(event_version).version()
                }
                Self::Completed { event_version, .. } => {
                    ::event_runtime::__private::VersionProbe(event_version).version()
                }
                Self::Reassigned { .. } => ::core::option::Option::None,
            }
        }
        fn json_schema() -> ::event_runtime::__private::serde_json::Value {
            #[allow(unused_imports)]
            use ::event_runtime::__private::{Permissive as _, ViaJsonSchema as _};
            (&&::event_runtime::__private::SchemaProbe::<Self>::new()).schema()
        }
    }
    ::event_runtime::__private::inventory::submit! {
        ::event_runtime::__private::EventDef { rust_name : "TaskEvent", module :
        ::core::module_path!(), types : < TaskEvent as ::event_runtime::__private::Event
        > ::TYPES, version : < TaskEvent as ::event_runtime::__private::Event >
        ::VERSION, schema : < TaskEvent as ::event_runtime::__private::Event >
        ::json_schema, upcast_from : ::core::option::Option::None, }
    }
};
