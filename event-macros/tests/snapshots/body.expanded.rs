const _: () = {
    use ::event_runtime::__private as _er;
    #[automatically_derived]
    impl _er::EventBody for TaskChange {
        const KEYED: bool = true;
        const FIELDS: &'static [&'static str] = &[
            "event_id",
            "event_version",
            "task_id",
            "user_id",
        ];
        fn partition_key(&self) -> ::core::option::Option<::std::string::String> {
            ::core::option::Option::Some(
                ::std::string::ToString::to_string(&self.user_id),
            )
        }
        fn event_id(&self) -> ::core::option::Option<::std::string::String> {
            ::core::option::Option::Some(
                ::std::string::ToString::to_string(&self.event_id),
            )
        }
        fn data_version(&self) -> _er::DataVersion<'_> {
            _er::DataVersion::Is(&self.event_version)
        }
    }
};

const _: () = {
    use ::event_runtime::__private as _er;
    #[automatically_derived]
    impl _er::Event for TaskChanged {
        const TYPES: &'static [&'static str] = &[
            "task.created",
            "task.deleted",
            "task.renamed",
        ];
        const VERSION: &'static str = "1.0";
        const TAG: ::core::option::Option<&'static str> = ::core::option::Option::Some(
            "event_type",
        );
        const FIELDS: &'static [&'static str] = {
            const LISTS: &[&[&str]] = &[
                &["event_id", "task_id", "user_id", "title"],
                <TaskChange as _er::EventBody>::FIELDS,
            ];
            const COMMON: ([&str; LISTS[0].len() + 1], usize) = _er::common_fields(
                "event_type",
                LISTS,
            );
            const ALL: &[&str; LISTS[0].len() + 1] = &COMMON.0;
            ALL.split_at(COMMON.1).0
        };
        fn event_type(&self) -> &'static str {
            match self {
                Self::Created { .. } => "task.created",
                Self::Deleted { .. } => "task.deleted",
                Self::Renamed { .. } => "task.renamed",
            }
        }
        fn partition_key(&self) -> ::core::option::Option<::std::string::String> {
            match self {
                Self::Created(body) => {
                    <TaskChange as _er::EventBody>::partition_key(body)
                }
                Self::Deleted(body) => {
                    <TaskChange as _er::EventBody>::partition_key(body)
                }
                Self::Renamed { user_id, .. } => {
                    ::core::option::Option::Some(
                        ::std::string::ToString::to_string(user_id),
                    )
                }
            }
        }
        fn event_id(&self) -> ::core::option::Option<::std::string::String> {
            match self {
                Self::Created(body) => <TaskChange as _er::EventBody>::event_id(body),
                Self::Deleted(body) => <TaskChange as _er::EventBody>::event_id(body),
                Self::Renamed { event_id, .. } => {
                    ::core::option::Option::Some(
                        ::std::string::ToString::to_string(event_id),
                    )
                }
            }
        }
        fn data_version(&self) -> _er::DataVersion<'_> {
            match self {
                Self::Created(body) => <TaskChange as _er::EventBody>::data_version(body),
                Self::Deleted(body) => <TaskChange as _er::EventBody>::data_version(body),
                Self::Renamed { .. } => _er::DataVersion::NotRead,
            }
        }
    }
    const _: () = ::core::assert!(
        < TaskChange as _er::EventBody > ::KEYED,
        "variant `Created` holds `TaskChange`, which is `#[event(unkeyed)]`, but `TaskChanged` is keyed: give the body a partition key, or make the enum unkeyed"
    );
    const _: () = ::core::assert!(
        < TaskChange as _er::EventBody > ::KEYED,
        "variant `Deleted` holds `TaskChange`, which is `#[event(unkeyed)]`, but `TaskChanged` is keyed: give the body a partition key, or make the enum unkeyed"
    );
    _er::inventory::submit! {
        _er::EventDef {
            rust_name: "TaskChanged",
            module: ::core::module_path!(),
            types: <TaskChanged as _er::Event>::TYPES,
            version: <TaskChanged as _er::Event>::VERSION,
            schema: <TaskChanged as _er::Event>::json_schema,
            upcast_from: ::core::option::Option::None,
        }
    }
};
