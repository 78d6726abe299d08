const _: () = {
    use ::event_runtime::__private as _er;
    #[automatically_derived]
    impl _er::Event for TaskEvent {
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
        fn data_version(&self) -> _er::DataVersion<'_> {
            match self {
                Self::Created { event_version, .. } => {
                    _er::DataVersion::Is(event_version)
                }
                Self::Completed { event_version, .. } => {
                    _er::DataVersion::Is(event_version)
                }
                Self::Reassigned { .. } => _er::DataVersion::NotRead,
            }
        }
        fn json_schema() -> _er::serde_json::Value {
            _er::json_schema_of::<Self>()
        }
    }
    _er::inventory::submit! {
        _er::EventDef {
            rust_name: "TaskEvent",
            module: ::core::module_path!(),
            types: <TaskEvent as _er::Event>::TYPES,
            version: <TaskEvent as _er::Event>::VERSION,
            schema: <TaskEvent as _er::Event>::json_schema,
            upcast_from: ::core::option::Option::None,
        }
    }
};
