import Training
import XCTest

/// Schedules against `transformers.get_*_schedule_with_warmup` values stored in the optimizer fixture.
final class LearningRateScheduleTests: XCTestCase {
    private func check(_ decay: TrainingConfig.DecayKind, minRatio: Double, fixtureKey: String) throws {
        let fixture = try XCTUnwrap(loadFixture("optimizer.json")["schedules"] as? [String: Any])
        let steps = doubles(fixture["steps"]).map { Int($0) }
        let expected = doubles(fixture[fixtureKey])
        XCTAssertEqual(steps.count, expected.count)
        XCTAssertGreaterThan(steps.count, 50)
        let schedule = LearningRateSchedule(
            peak: try XCTUnwrap(fixture["base_learning_rate"] as? Double),
            warmupSteps: try XCTUnwrap(fixture["warmup_steps"] as? Int),
            totalSteps: try XCTUnwrap(fixture["total_steps"] as? Int), decay: decay, minRatio: minRatio)
        for (step, value) in zip(steps, expected) {
            XCTAssertEqual(schedule.lr(step: step), value, accuracy: 1e-12, "\(fixtureKey) at step \(step)")
        }
    }

    func testLinearWarmupAndDecayMatchesTransformers() throws {
        try check(.linear, minRatio: 0, fixtureKey: "linear")
    }

    func testCosineDecayMatchesTransformers() throws {
        try check(.cosine, minRatio: 0, fixtureKey: "cosine")
    }

    func testCosineDecayToFloorMatchesTransformersMinLR() throws {
        try check(.cosine, minRatio: 0.1, fixtureKey: "cosine_min_lr_ratio_0.1")
    }

    func testConstantAfterWarmupMatchesTransformers() throws {
        try check(.constant, minRatio: 0, fixtureKey: "constant")
    }

    func testLinearDecayToFloor() throws {
        try check(.linear, minRatio: 0.2, fixtureKey: "linear_min_lr_ratio_0.2")
    }

    func testRateStaysAtFinalValuePastTotalSteps() {
        let cosine = LearningRateSchedule(peak: 2e-4, warmupSteps: 10, totalSteps: 100, decay: .cosine, minRatio: 0.1)
        XCTAssertEqual(cosine.lr(step: 250), 2e-5, accuracy: 1e-18)
        let linear = LearningRateSchedule(peak: 2e-4, warmupSteps: 0, totalSteps: 100, decay: .linear)
        XCTAssertEqual(linear.lr(step: 0), 2e-4)
        XCTAssertEqual(linear.lr(step: 1000), 0)
    }
}
