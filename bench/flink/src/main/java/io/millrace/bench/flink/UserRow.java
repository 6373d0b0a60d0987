package io.millrace.bench.flink;

import java.time.Instant;

/**
 * One row of the example table (examples/randomuser.yaml, the seed's
 * columns): a Flink POJO (public fields, no-argument constructor), so Flink
 * serializes it with its POJO serializer rather than Kryo. The id stays text
 * until the sink binds it: a UUID field would be a generic (Kryo) type.
 */
public class UserRow {
    public String id;
    public String firstName;
    public String lastName;
    public String gender;
    public String address;
    public String postCode;
    public String email;
    public String username;
    public Instant registeredDate;
    public String phone;
    public String picture;

    public UserRow() {}
}
